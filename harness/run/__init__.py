"""The run: one case end to end, and many of them.

``case`` (deploy, trigger and inject faults, watch, collect the history, check, journal),
``observe`` (polling the API into a history), ``session``
(a session's systems, its cleanup on exit, Ctrl-C and SIGTERM, leftovers of SIGKILLed ones),
``schedule`` (cases at once, longest first, deployed ahead), ``shard`` (a split of the cases by
measured duration), ``explore`` (random fault schedules with Hypothesis), ``bench`` and
``figures`` (the harness's own cost), ``mutate`` (seeded regressions of Prefect: would the rows
notice?).
"""
