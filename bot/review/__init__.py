"""The weekly review: figures, chart and what is worth a look, posted once per slot in each deployment channel."""
