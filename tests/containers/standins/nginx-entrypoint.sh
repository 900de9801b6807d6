#!/bin/sh
# Test device, never shipped: what the real nginx image's entrypoint does with templates
# (/docker-entrypoint.d/20-envsubst-on-templates.sh): each /etc/nginx/templates/*.template is
# written to NGINX_ENVSUBST_OUTPUT_DIR (default /etc/nginx/conf.d) without its suffix, with
# ${VAR} filled in for the variables set whose names match NGINX_ENVSUBST_FILTER; then nginx.
set -e
template_dir="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
output_dir="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
filter="${NGINX_ENVSUBST_FILTER:-}"
if [ "$1" = nginx ] && [ -d "$template_dir" ]; then
  defined_envs=$(printf '${%s} ' $(awk "END { for (name in ENVIRON) { print ( name ~ /${filter}/ ) ? name : \"\" } }" < /dev/null))
  find "$template_dir" -follow -type f -name "*$suffix" -print | while read -r template; do
    relative_path="${template#"$template_dir/"}"
    output_path="$output_dir/${relative_path%"$suffix"}"
    mkdir -p "$(dirname "$output_path")"
    echo "$0: Running envsubst on $template to $output_path"
    envsubst "$defined_envs" < "$template" > "$output_path"
  done
fi
exec "$@"
