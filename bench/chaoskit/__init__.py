"""The pieces of ``bench/chaos.py``, one concept a module.

- :mod:`.plan`: what one run does (:class:`~.plan.Plan`) and when each fault falls;
- :mod:`.hosts`: where the processes run (network namespaces, or plain loopback);
- :mod:`.postgres`: reaching a local PostgreSQL from a namespace, and restarting it;
- :mod:`.cluster`: the coordinator, worker and submitter processes of one run;
- :mod:`.submit`: the submitter itself (``bench/chaos.py _submit``);
- :mod:`.faults`: carries the fault schedule out against the cluster;
- :mod:`.run`: one run, from an empty store to a checked report;
- :mod:`.invariants`: the checks over the store's events and the handlers' side log;
- :mod:`.report`: what a run found, printed and appended to ``bench/results/chaos.jsonl``.

``bench/chaos.py`` is the entry point; it puts the repository root and ``tests/`` (for
``lan.netns``) on ``sys.path`` before it imports these modules. Never part of the test
suite.
"""
