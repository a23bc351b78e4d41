"""``rnnbench run``: a job's cells as Ray tasks, resumable — the driver (:mod:`.driver`),
the node registry actor (:mod:`.registry`), the cost estimate (:mod:`.estimate`) and the
command line (:mod:`.command`).  Kept empty: the registry actor's worker imports this
package, and it must stay light."""
