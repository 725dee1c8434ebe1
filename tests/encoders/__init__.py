"""Real encoders driven live on 127.0.0.1 for the conformance suite (tests/test_conformance.py).

Each case (cases.py) feeds a mezzanine (source.py: barcoded frames, a beep on whole
seconds) in real time to an encoder (runners.py); one daemon records every case at once
and clips them (live.py); the origin's own files give the truth (truth.py) that each
decoded clip is held against (verdict.py); report.py keeps the case table.

What each encoder stamps, as measured on Debian 12's builds:

- ffmpeg 5.1 hlsenc, `-hls_flags program_date_time`: the first PDT is the wall clock when
  the muxer starts; each later PDT is the previous plus the EXTINF, and the EXTINF is the
  pts distance between the first video packets (decode order) of successive segments.
  So a PDT marks the pts of its segment's first video packet in decode order: the
  keyframe, which for closed GOPs is the first presented frame. With x264 open GOPs the
  leading B-frames of a segment are presented up to 120 ms before the frame its PDT
  marks. With `split_by_time` and a long GOP a segment may begin with a P-frame: its PDT
  marks that P-frame, not the earliest presented frame (B-frames after it are shown up
  to two frames earlier). Audio never moves a PDT: neither AAC priming (audio starts
  21.3 ms before video in the first segment) nor `-itsoffset` (audio 150 ms ahead).
  PDTs are written with milliseconds and a "+0000" offset. With libx265 in fMP4 (open
  GOP, B-frames) the first segment's EXTINF is 2.000 s although its media lasts 1.960 s,
  so every later PDT is one frame later than media time continued from segment 0.
  On a restart with `append_list+discont_start` ffmpeg rewrites the whole playlist: it
  keeps the earlier PDTs, adds a discontinuity before the first segment as well as before
  the new run, and the new run's PDTs start from the wall clock of the restart.
- GStreamer 1.22 hlssink2: no EXT-X-PROGRAM-DATE-TIME at all (the element has no
  property for it), so livecut puts the session on its own clock. EXTINF values carry
  float noise (2.002000093460083); EXT-X-ENDLIST is written on EOS. avenc_aac's priming
  is not trimmed: the audio plays 21.3 ms late against the picture in the source itself.
- nginx-rtmp 1.2.2 (libnginx-mod-rtmp): no PDT; no EXT-X-ENDLIST when the publisher
  leaves (the session ends by silence); the playlist opens with EXT-X-DISCONTINUITY;
  each segment starts with buffered audio 100-200 ms before its first video frame.
"""
