# Sets the user's connection limit. Run by Terraform's local-exec with DB_USER and MAX_CONN in
# the environment (validated by the module), admin access in MARIADB_ADMIN_*.
set -eu
MYSQL_PWD="${MARIADB_ADMIN_PASSWORD:-}" mariadb --batch \
  --host="$MARIADB_ADMIN_HOST" --port="$MARIADB_ADMIN_PORT" --user="$MARIADB_ADMIN_USER" \
  -e "ALTER USER '$DB_USER'@'%' WITH MAX_USER_CONNECTIONS $MAX_CONN"
echo "user $DB_USER may open $MAX_CONN connections"
