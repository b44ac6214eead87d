"""Registry records: adult donors and cord blood units, as registries send them."""
