# Example (not run here): an RDS PostgreSQL instance through the public RDS module, as a
# platform team would offer it through paved. Credentials for AWS come from the environment
# paved passes (the part's `env`), never from variables.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
  # No backend here: paved adds its own (its http state endpoint) for every run.
}

provider "aws" {
  default_tags {
    tags = {
      "paved:owner" = var.paved_owner_tag
    }
  }
}

variable "identifier" {
  type = string
}

variable "database" {
  type = string
}

variable "instance_class" {
  type = string
}

variable "storage_gb" {
  type = number
}

variable "backup_retention_days" {
  type    = number
  default = 7
}

variable "multi_az" {
  type    = bool
  default = false
}

# Given by paved.
variable "paved_password" {
  type      = string
  sensitive = true
}

variable "paved_owner_tag" {
  type = string
}

module "db" {
  source  = "terraform-aws-modules/rds/aws"
  version = "~> 6.0"

  identifier              = var.identifier
  engine                  = "postgres"
  engine_version          = "16"
  family                  = "postgres16"
  major_engine_version    = "16"
  instance_class          = var.instance_class
  allocated_storage       = var.storage_gb
  db_name                 = var.database
  username                = var.database
  port                    = 5432
  multi_az                = var.multi_az
  backup_retention_period = var.backup_retention_days

  # paved generated and sealed the password; the module sets it as is.
  manage_master_user_password = false
  password                    = var.paved_password

  deletion_protection = false
  skip_final_snapshot = true
}

output "host" {
  value = module.db.db_instance_address
}

output "port" {
  value = module.db.db_instance_port
}

output "database" {
  value = var.database
}

output "user" {
  value = var.database
}

output "password" {
  value     = var.paved_password
  sensitive = true
}
