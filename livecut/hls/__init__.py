"""Pure HLS logic: playlists in, segments, gaps and reload times out; no I/O."""
