"""Analysis of recorded media: shots, previews, thumbnails, loudness, highlight scoring."""
