"""Jenkins integration: one in-memory job model per package renders the Jenkinsfiles and the
config.xml files, drives `relman jobs sync` and the local runner (`relman pipeline run --local`).

    model.py    specs -> JobSet (folders, jobs: parameters, triggers, options, stages)
    params.py   strict validation of every parameter value, in Python, before use
    render.py   JobSet -> Jenkinsfile + config.xml text (templates in release_manager/templates/jenkins/)
    lint.py     scans generated Groovy for string interpolation
    client.py   python-jenkins wrapper: settings, token hiding, error mapping
    sync.py     `relman jobs sync`: create, reconfigure, prune (marker only)
    trigger.py  `relman jobs trigger`: queue item -> build -> result -> console tail
    runner.py   `relman pipeline run --local`: the same stage commands on this machine
"""
