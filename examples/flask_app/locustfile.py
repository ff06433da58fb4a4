"""The Locust load of the demo: the example API's endpoints in a fixed mix, as fast as they answer.

Run by ``examples/flask_app/demo.py`` (``make demo``) headless and bounded in time::

    locust -f examples/flask_app/locustfile.py --headless -u 8 -r 8 --run-time 20s \\
        --host http://127.0.0.1:8000
"""

from __future__ import annotations

import itertools

from locust import HttpUser, constant, task

_users = itertools.count()


class ApiUser(HttpUser):
    """One client of the example API; the task weights are the mix of a busy afternoon."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.number = next(_users)

    @task(3)
    def report(self) -> None:
        self.client.get("/report")

    @task(2)
    def login(self) -> None:
        self.client.post("/login", json={"password": f"pw-{self.number}"})

    @task(6)
    def user(self) -> None:
        self.number += 7919
        self.client.get(f"/users/{self.number % 5000}", name="/users/<id>")

    @task(4)
    def inventory(self) -> None:
        self.client.get("/inventory")

    @task(5)
    def health(self) -> None:
        self.client.get("/health")
