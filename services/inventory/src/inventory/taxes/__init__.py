"""The tax rates a merchant uses: a product may only carry one of them."""
