"""Roll a promoted model out to the serving side (filled in below)."""
