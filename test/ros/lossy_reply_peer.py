"""A peer process for test_lost_replies_process.py: the simulator's /sim/reset and /sim/task and the inference
node's reset_episode, except that the first reply of each service is dropped after its request was served,
as Fast DDS does when the server has not yet matched a new client's reply reader."""

from __future__ import annotations

import json
import sys

from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from dreamzero_ros.ros import qos
from dreamzero_ros.ros.names import RESET_EPISODE_SERVICE, SIM_RESET_SERVICE, SIM_TASK_TOPIC
from dreamzero_ros.ros.runtime import run_node

FIRST_SEED = 40


class LossyPeer(Node):
    def __init__(self) -> None:
        super().__init__("lossy_reply_peer")
        self.seed = FIRST_SEED  # the scene starts in the episode the first reset gives, as sim_robot's does
        self.resets = 0
        self.task_pub = self.create_publisher(String, SIM_TASK_TOPIC, qos.LATCHED)
        for name, callback in ((SIM_RESET_SERVICE, self.on_sim_reset), (RESET_EPISODE_SERVICE, self.on_reset_episode)):
            service = self.create_service(Trigger, name, callback)
            service.send_response = self.dropping_the_first(name, service.send_response)
        self.create_timer(1 / 15, self.publish_task)
        print("lossy peer ready", flush=True)

    def dropping_the_first(self, name: str, send):
        replies = 0

        def send_response(response, header) -> None:
            nonlocal replies
            replies += 1
            if replies == 1:
                print(f"dropped the reply of {name}", flush=True)
                return
            send(response, header)

        return send_response

    def on_sim_reset(self, _request, response):
        if self.resets:
            self.seed += 1
        self.resets += 1
        print(f"sim reset {self.resets}: seed {self.seed}", flush=True)
        response.success, response.message = True, f"lossy: task=reach seed={self.seed} instruction='touch the red cube'"
        return response

    def on_reset_episode(self, _request, response):
        print("episode reset", flush=True)
        response.success, response.message = True, "episode reset"
        return response

    def publish_task(self) -> None:
        state = {"task": "reach", "seed": self.seed, "instruction": "touch the red cube", "resets": self.resets,
                 "success": False, "stamp": 0.0, "objects": {}, "target": "red_cube", "tcp": [0.0, 0.0, 0.0]}
        self.task_pub.publish(String(data=json.dumps(state)))


if __name__ == "__main__":
    run_node(LossyPeer, sys.argv[1:])
