# Test device, never shipped: a stand-in for python:3.11-slim-bookworm where no registry can
# be reached, built by tests/containers/standins.py from a debootstrapped Debian bookworm
# (BASE) with Debian's Python 3.11 (3.11.2 where the real image has the newest 3.11), python
# and pip on PATH as in the real image, pip allowed to install (no EXTERNALLY-MANAGED), and
# the build host's certificate authorities trusted (ca-certificates/, copied in by the test):
# pip's HTTPS may pass through them.
ARG BASE
FROM ${BASE}
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-pip python3-venv \
    && update-ca-certificates \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && ln -s /usr/bin/pip3 /usr/local/bin/pip \
    && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
CMD ["python3"]
