"""The composition root: the one place that builds the running appliance from its parts.

``app.node.engine`` assembles the engine process (market data, recording, the decision loop, live
execution, the model store, the control channel); ``app.node.bench`` the decision-loop benchmark
over a recording. Everything below is a library that never imports this package: ``app.engine``
(the per-message loop and its parts), ``app.live`` (real orders), ``app.models`` (the model store,
shadow runs, training), ``app.store`` (databases), ``app.sim`` (the exchange simulator).
"""
