"""Custom Keras layers of the Mask R-CNN graph. Each wraps pure functions that tests call directly."""
