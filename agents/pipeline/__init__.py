"""The evolution pipeline's shared vocabulary: messages, the row store protocol, seeds."""
