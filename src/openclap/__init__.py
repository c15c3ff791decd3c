"""openclap: Contrastive Language-Audio Pretraining."""

__version__ = "0.1.0"
