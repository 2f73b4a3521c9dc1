"""One container of the fake OpenWhisk Python runtime: runs one zip action, one request at a time.

Started by ``_digitalocean_fake.py`` as ``python _openwhisk_worker.py <action dir>`` with the
action's zip extracted there. Like the OpenWhisk Python runtime it loads ``__main__.py`` under
another module name (``main__``), then reads one JSON line per activation on stdin,
``{"args": {...}}``, calls ``main(args)`` and writes one JSON line on stdout: ``{"result": ...}``
or ``{"raised": "<type>: <message>"}`` when ``main`` raised. What the action prints goes to
stderr, so it cannot corrupt the replies.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys


def main() -> None:
    action_dir = sys.argv[1]
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr
    sys.path.insert(0, action_dir)
    spec = importlib.util.spec_from_file_location("main__", os.path.join(action_dir, "__main__.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = {"result": module.main(request["args"])}
        except Exception as error:
            reply = {"raised": f"{type(error).__name__}: {error}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
