"""Framework adapters over adamp_core: adapters.torch and adapters.optax."""
