"""Command-line interface (`irat train`, `irat eval`)."""
