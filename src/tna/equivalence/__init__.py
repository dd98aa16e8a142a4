"""The equivalence suite: proof that TNA never changes what Linux does to a packet.

A scenario (topology and configuration in namespaces) is built twice, once with TNA off and
once with TNA on; the hosts send the same corpus of frames, and what every host receives is
compared frame by frame.  See docs/equivalence.md.

- :mod:`~tna.equivalence.capture`: AF_PACKET injection and capture inside host namespaces;
- :mod:`~tna.equivalence.corpus`, :mod:`~tna.equivalence.l2corpus`: the named frames;
- :mod:`~tna.equivalence.randomised`: seeded random frames;
- :mod:`~tna.equivalence.scenarios`: topologies, configurations, which host sends what;
- :mod:`~tna.equivalence.normalise`: the only fields the comparison may ignore, and why;
- :mod:`~tna.equivalence.harness`: run twice, compare; :mod:`~tna.equivalence.report`: the diff.
"""
