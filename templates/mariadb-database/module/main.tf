# A MariaDB database and its owner user on the environment's server, made by the `mariadb`
# client from local-exec provisioners (only Terraform's built-in provider is used, so this runs
# anywhere the client is installed).
#
# Admin access comes from the environment paved passes (MARIADB_ADMIN_*: named by the
# offering, valued by paved's configuration), read by the shell at run time: it is never a
# variable, so it is in neither the plan nor the state. Tenant values reach the shell only as
# environment variables, never spliced into the command, and are validated first.

terraform {
  required_version = ">= 1.5"
}

variable "database" {
  type        = string
  description = "Database name."
  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,63}$", var.database))
    error_message = "database must be 1-64 lower-case letters, digits or _ and start with a letter."
  }
}

variable "user" {
  type        = string
  description = "The database's owner (login) user."
  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,31}$", var.user))
    error_message = "user must be 1-32 lower-case letters, digits or _ and start with a letter."
  }
}

variable "connection_limit" {
  type        = number
  default     = 20
  description = "MAX_USER_CONNECTIONS of the user."
  validation {
    condition     = var.connection_limit >= 1 && var.connection_limit <= 1000 && floor(var.connection_limit) == var.connection_limit
    error_message = "connection_limit must be a whole number from 1 to 1000."
  }
}

# Given by paved: the password it generated and sealed, and the tag that marks what it owns.
variable "paved_password" {
  type      = string
  sensitive = true
}

variable "paved_owner_tag" {
  type = string
}

# Where tenants connect: the outputs (the admin's address is the environment's own).
variable "host" {
  type    = string
  default = "127.0.0.1"
}

variable "port" {
  type    = number
  default = 3306
}

locals {
  host = var.host
  port = var.port
}

resource "terraform_data" "database" {
  # What the destroy provisioner needs (it may read only self): nothing secret.
  input = {
    database = var.database
    user     = var.user
    tag      = var.paved_owner_tag
  }
  # Another name is another database: replaced (the old one dropped).
  triggers_replace = [var.database, var.user]

  provisioner "local-exec" {
    interpreter = ["/bin/sh", "-c"]
    command     = file("${path.module}/create.sh")
    environment = {
      DB      = var.database
      DB_USER = var.user
      DB_PASS = var.paved_password
      TAG     = var.paved_owner_tag
    }
  }

  provisioner "local-exec" {
    when        = destroy
    interpreter = ["/bin/sh", "-c"]
    command     = file("${path.module}/destroy.sh")
    environment = {
      DB      = self.input.database
      DB_USER = self.input.user
      TAG     = self.input.tag
    }
  }
}

# The user's connection limit, apart from the database: a new size replaces only this, whose
# provisioner alters the user in place (the database and its data stay).
resource "terraform_data" "limits" {
  depends_on = [terraform_data.database]
  # What the price book prices this part by (pricing.yaml, terraform.resource_types).
  input = {
    max_user_connections = var.connection_limit
  }
  triggers_replace = [var.database, var.user, var.connection_limit]

  provisioner "local-exec" {
    interpreter = ["/bin/sh", "-c"]
    command     = file("${path.module}/limits.sh")
    environment = {
      DB_USER  = var.user
      MAX_CONN = tostring(var.connection_limit)
    }
  }
}

output "host" {
  value = local.host
}

output "port" {
  value = local.port
}

output "database" {
  value = var.database
}

output "user" {
  value = var.user
}

output "password" {
  value     = var.paved_password
  sensitive = true
}

# The whole connection string: sensitive (it holds the password), so paved seals it with the
# credentials.
output "url" {
  value     = "mysql://${var.user}:${var.paved_password}@${local.host}:${local.port}/${var.database}"
  sensitive = true
}
