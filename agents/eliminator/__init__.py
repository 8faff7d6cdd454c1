"""The eliminator: WizardLM's rules that decide whether an evolution failed."""
