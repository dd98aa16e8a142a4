"""The equivalence suite: proof that TNA never changes what Linux does to a packet.

A scenario (topology and configuration in namespaces) is built twice, once with TNA off and
once with TNA on; the hosts send the same corpus of frames, and what every host receives is
compared frame by frame.  See docs/equivalence.md.  Test code: it lives beside the tests, not
in the installed ``tna`` package (no user command needs it, and it needs scapy).

- :mod:`~testing.equivalence.capture`: AF_PACKET injection and capture inside host namespaces;
- :mod:`~testing.equivalence.corpus`, :mod:`~testing.equivalence.l2corpus`: the named frames;
- :mod:`~testing.equivalence.randomised`: seeded random frames;
- :mod:`~testing.equivalence.scenarios`: topologies, configurations, which host sends what;
- :mod:`~testing.equivalence.normalise`: the only fields the comparison may ignore, and why;
- :mod:`~testing.equivalence.harness`: run twice, compare;
  :mod:`~testing.equivalence.report`: the diff;
- :mod:`~testing.equivalence.divergences`: the known divergences the tests keep out.
"""
