"""Network heads: the region proposal network and the box classifier / mask heads."""
