"""Sphinx extension for the book build: the kernels that execute the chapters talk to the build over
encrypted sockets.

ipykernel (7.3 and later) warns "Kernel is running over TCP without encryption" at every start
unless the kernel manager hands it CurveZMQ keys, and jupyter_client's manager does so only when
its `transport_encryption` policy is "auto" or "required" (default: "disabled"). MyST-NB starts
each notebook's kernel through nbclient without any way to pass the manager's configuration, so
one unencrypted kernel per chapter used to print that warning into the build log. This extension
sets the policy's default to "auto" for the build: keys are provisioned for every kernel whose
kernelspec declares `"supported_encryption": ["curve"]` (ipykernel's does), and nothing changes
for kernels or libraries that know nothing about it."""


def setup(app):
    import zmq
    from jupyter_client.manager import KernelManager

    policy = getattr(KernelManager, "transport_encryption", None)   # jupyter_client >= 8.9
    if policy is not None and zmq.has("curve"):
        policy.default_value = "auto"
    return {"parallel_read_safe": True, "parallel_write_safe": True}
