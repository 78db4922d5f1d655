"""Knowledge-distillation losses (placeholder: filled by the distillation issue)."""
