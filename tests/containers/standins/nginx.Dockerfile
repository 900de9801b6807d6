# Test device, never shipped: a stand-in for the nginx image docker-compose.yml names where no
# registry can be reached, built by tests/containers/standins.py from a debootstrapped Debian
# bookworm (BASE) with Debian's nginx-light (1.22; deploy/nginx.conf needs nothing newer). As
# in the real image: logs to the container's stdout and stderr, `nginx -g 'daemon off;'`,
# SIGQUIT (a graceful stop) for docker stop, and templates in /etc/nginx/templates filled in
# from the environment at start (nginx-entrypoint.sh; compose's NGINX_CLIENT_* settings).
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light \
        gettext-base mawk \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
COPY nginx-entrypoint.sh /docker-entrypoint.sh
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["nginx", "-g", "daemon off;"]
