"""Getting real data sets into the registry layout: downloads, archive extraction and importers."""
