"""Training: RPN targets, the input pipeline, the five losses and the Keras train step."""
