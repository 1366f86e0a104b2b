"""How robustrain splits a fixed number of evaluation images over DDP ranks."""


def rank_share(total: int, world_size: int) -> int:
    """Images each rank takes so that all `world_size` ranks together take `total` (rounded up: ceil(total / world))."""
    return -(-total // world_size)
