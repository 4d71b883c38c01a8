"""Training: manifests (immutable, hashed training sets), the YOLO-pose training job, evaluation."""
