"""The model: what a scenario is and how a run of it is judged, with no process, container or
server in sight.

``scenario`` (matrix rows, their validation, loading and selection), ``faults`` (the fault
vocabulary: kinds, targets, heals, the record of one injected fault), ``history`` (what a run
left: flow runs, states, task executions), ``check`` (the pure checker: a history against an
expectation, a verdict and its figures), ``journal`` (one JSON line per finished case, appended
and fsynced).  Nothing here imports the system under test, a backend, the run or the report.
"""
