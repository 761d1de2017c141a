# Drops the database and its user, only when the database carries this resource's tag (or is
# gone already: a destroy that ran before converges).
set -eu
admin() {
  MYSQL_PWD="${MARIADB_ADMIN_PASSWORD:-}" mariadb --batch --skip-column-names \
    --host="$MARIADB_ADMIN_HOST" --port="$MARIADB_ADMIN_PORT" --user="$MARIADB_ADMIN_USER" "$@"
}
exists="$(admin -e "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '$DB'")"
owner="$(admin -e "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '$DB'")"
if [ "$exists" != 0 ] && [ "$owner" != "$TAG" ]; then
  echo "database $DB is not this resource's; leaving it alone" >&2
  exit 1
fi
admin <<SQL
DROP DATABASE IF EXISTS \`$DB\`;
DROP USER IF EXISTS '$DB_USER'@'%';
SQL
echo "database $DB and user $DB_USER dropped"
