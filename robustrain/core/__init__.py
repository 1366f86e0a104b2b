"""The lowest layer, imported by every other package and importing none of them: the errors robustrain raises and
its exit codes (`errors`), argument checks (`validation`), seeding (`seeding`), rank helpers (`ranks`) and the
train/eval mode context of attacks (`train_eval_modes`)."""
