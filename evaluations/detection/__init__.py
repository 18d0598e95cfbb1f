"""Detection and instance-segmentation transfer: scenes, converter, backends."""
