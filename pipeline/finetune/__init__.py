"""Fine-tuning a pretrained tokenmill checkpoint: sequence classification and instruction tuning."""
