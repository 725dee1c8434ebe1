"""The network side of recording: fetching playlists and segments from origins."""
