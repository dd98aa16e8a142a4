"""The forwarding firewall: netfilter rules on the forward hook, compiled for the fast path.

Role in the flow: ``netfilter`` (kernel → rules) → ``firewall.ruleset`` (rules → model) →
``firewall.compile`` (model → :class:`~tna.firewall.tables.FwTables`) → ``plan`` →
``datapath.loader`` (tables → BPF maps).
"""
