"""Pre-training and fine-tuning: losses, the CMIMTrainer, code statistics, corpora (whole or
streamed), the pre-training run and fine-tuning with a property head."""
