"""Evaluation protocols on a frozen or fine-tuned backbone: kNN (knn.py), linear probe (linear.py),
semi-supervised fine-tuning on 1 % / 10 % of the labels (semi_supervised.py), detection and
instance-segmentation transfer (detection/), and the representation diagnostics recorded with
every run (diagnostics.py). They stand on the core (bench/) and methods/; the pipeline runs them."""
