"""The notebook path over every stage: `from latent_concepts import api`."""
