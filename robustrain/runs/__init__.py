"""What a run writes and reads back: atomic, durable files (`atomic`), Lightning's checkpoint writer on top of them
(`checkpoint_io`), finding and loading checkpoints weights-only (`checkpoints`), the run signature a resume is
compared against (`resume`), the run-folder lock (`lock`) and TensorBoard helpers (`monitoring`)."""
