"""Repository-wide pytest set-up.

nbval starts each notebook's kernel with jupyter_client's ``KernelManager`` over TCP; here it uses the
same IPC-socket manager as the book build, so a test run beside a build (or another test run) cannot
race it for ports. ``tools/build_book.py`` (``_ipc_kernel_manager``) says why that race breaks kernels.
"""

import nbval.kernel

from tools.build_book import ipc_kernel_manager_classes

nbval.kernel.KernelManager = ipc_kernel_manager_classes()[0]
