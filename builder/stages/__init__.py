"""The build pipeline's stages, one job each, run in order by builder.pipeline."""
