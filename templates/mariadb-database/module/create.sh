# Creates (or converges) the database and its user. Run by Terraform's local-exec with DB,
# DB_USER, DB_PASS and TAG in the environment (validated by the module: names are [a-z0-9_],
# the password is paved's [A-Za-z0-9]), admin access in MARIADB_ADMIN_*.
set -eu
admin() {
  MYSQL_PWD="${MARIADB_ADMIN_PASSWORD:-}" mariadb --batch --skip-column-names \
    --host="$MARIADB_ADMIN_HOST" --port="$MARIADB_ADMIN_PORT" --user="$MARIADB_ADMIN_USER" "$@"
}
# paved's tag is the database's comment: one that exists without it is someone else's.
owner="$(admin -e "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '$DB'")"
exists="$(admin -e "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '$DB'")"
if [ "$exists" != 0 ] && [ "$owner" != "$TAG" ]; then
  echo "database $DB exists and is not this resource's; refusing to take it over" >&2
  exit 1
fi
admin <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB\` COMMENT '$TAG';
CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'%' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON \`$DB\`.* TO '$DB_USER'@'%';
SQL
echo "database $DB and user $DB_USER ready"
