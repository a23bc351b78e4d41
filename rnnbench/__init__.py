"""rnnbench: measure the cost trade-offs of training recurrent networks
(Goodfellow, Bengio & Courville, *Deep Learning*, section 10.2)."""

__version__ = "0.1.0"
