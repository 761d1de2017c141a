//! Sealed values at rest: resources' credentials (`secrets`), the key-check values of the keys
//! the database needs (`secret_keys`), and, for re-sealing, the signing keys' sealed halves.
//! Only ciphertext passes through here; sealing and opening are `vocab::secret_box`'s.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, OnConflict},
};
use uuid::Uuid;

use super::entities::{secret, secret_key, signing_key};
use crate::vocab::secret_box::Sealed;

fn sealed_of(key_id: String, nonce: Vec<u8>, ciphertext: Vec<u8>) -> Sealed {
    Sealed {
        key_id,
        nonce,
        ciphertext,
    }
}

/// Resource `resource_id`'s sealed value `name` (a part's password, the credentials document).
pub async fn sealed<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
    name: &str,
) -> Result<Option<Sealed>, DbErr> {
    Ok(secret::Entity::find()
        .filter(secret::Column::ResourceId.eq(resource_id))
        .filter(secret::Column::Name.eq(name))
        .one(db)
        .await?
        .map(|r| sealed_of(r.key_id, r.nonce, r.ciphertext)))
}

/// Stores `sealed` as resource `resource_id`'s value `name`, replacing the one it had: one
/// statement, on the unique (resource_id, name) index.
pub async fn replace<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
    name: &str,
    sealed: &Sealed,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use secret::Column as C;
    secret::Entity::insert(secret::ActiveModel {
        id: Set(Uuid::now_v7().to_string()),
        resource_id: Set(resource_id.into()),
        name: Set(name.into()),
        key_id: Set(sealed.key_id.clone()),
        nonce: Set(sealed.nonce.clone()),
        ciphertext: Set(sealed.ciphertext.clone()),
        created_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([C::ResourceId, C::Name])
            .update_columns([C::KeyId, C::Nonce, C::Ciphertext, C::CreatedAt])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Destroys every sealed value of a resource.
pub async fn delete_of_resource<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
) -> Result<(), DbErr> {
    secret::Entity::delete_many()
        .filter(secret::Column::ResourceId.eq(resource_id))
        .exec(db)
        .await?;
    Ok(())
}

/// A sealed value and what it belongs to (its context is made from that).
pub struct SealedRow<K> {
    pub key: K,
    pub sealed: Sealed,
}

/// Credentials: how many values each key id seals.
pub async fn count_by_key<C: ConnectionTrait>(db: &C) -> Result<Vec<(String, i64)>, DbErr> {
    secret::Entity::find()
        .select_only()
        .column(secret::Column::KeyId)
        .column_as(secret::Column::Id.count(), "n")
        .group_by(secret::Column::KeyId)
        .into_tuple()
        .all(db)
        .await
}

/// Credentials: one value sealed with `key_id`, keyed by (resource, name).
pub async fn one_sealed_with<C: ConnectionTrait>(
    db: &C,
    key_id: &str,
) -> Result<Option<SealedRow<(String, String)>>, DbErr> {
    Ok(secret::Entity::find()
        .filter(secret::Column::KeyId.eq(key_id))
        .one(db)
        .await?
        .map(|r| SealedRow {
            key: (r.resource_id, r.name),
            sealed: sealed_of(r.key_id, r.nonce, r.ciphertext),
        }))
}

/// One stored credential value, with the row it is in (to re-seal it in place).
pub struct Credential {
    pub id: String,
    pub resource_id: String,
    pub name: String,
    pub sealed: Sealed,
}

/// Credentials not sealed with `key_id`: at most `limit`, after row `after`, by id (so rows
/// written meanwhile cannot keep a paging loop going).
pub async fn page_not_sealed_with<C: ConnectionTrait>(
    db: &C,
    key_id: &str,
    after: &str,
    limit: u64,
) -> Result<Vec<Credential>, DbErr> {
    Ok(secret::Entity::find()
        .filter(secret::Column::KeyId.ne(key_id))
        .filter(secret::Column::Id.gt(after))
        .order_by_asc(secret::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|r| Credential {
            id: r.id,
            resource_id: r.resource_id,
            name: r.name,
            sealed: sealed_of(r.key_id, r.nonce, r.ciphertext),
        })
        .collect())
}

/// Replaces credential `c`'s sealed value by `new`, only if the row still holds what was read
/// (the engine may have replaced it meanwhile). True when it did.
pub async fn reseal<C: ConnectionTrait>(
    db: &C,
    c: &Credential,
    new: Sealed,
) -> Result<bool, DbErr> {
    let done = secret::Entity::update_many()
        .col_expr(secret::Column::KeyId, Expr::value(new.key_id))
        .col_expr(secret::Column::Nonce, Expr::value(new.nonce))
        .col_expr(secret::Column::Ciphertext, Expr::value(new.ciphertext))
        .filter(secret::Column::Id.eq(c.id.as_str()))
        .filter(secret::Column::KeyId.eq(c.sealed.key_id.as_str()))
        .filter(secret::Column::Nonce.eq(c.sealed.nonce.clone()))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Signing keys: how many each key id seals.
pub async fn signing_keys_by_key<C: ConnectionTrait>(db: &C) -> Result<Vec<(String, i64)>, DbErr> {
    signing_key::Entity::find()
        .select_only()
        .column(signing_key::Column::KeyId)
        .column_as(signing_key::Column::Kid.count(), "n")
        .group_by(signing_key::Column::KeyId)
        .into_tuple()
        .all(db)
        .await
}

/// Signing keys: one sealed with `key_id`, keyed by its kid.
pub async fn one_signing_key_sealed_with<C: ConnectionTrait>(
    db: &C,
    key_id: &str,
) -> Result<Option<SealedRow<String>>, DbErr> {
    Ok(signing_key::Entity::find()
        .filter(signing_key::Column::KeyId.eq(key_id))
        .one(db)
        .await?
        .map(|r| SealedRow {
            key: r.kid,
            sealed: sealed_of(r.key_id, r.nonce, r.ciphertext),
        }))
}

/// Signing keys not sealed with `key_id`, by kid.
pub async fn signing_keys_not_sealed_with<C: ConnectionTrait>(
    db: &C,
    key_id: &str,
) -> Result<Vec<SealedRow<String>>, DbErr> {
    Ok(signing_key::Entity::find()
        .filter(signing_key::Column::KeyId.ne(key_id))
        .all(db)
        .await?
        .into_iter()
        .map(|r| SealedRow {
            key: r.kid,
            sealed: sealed_of(r.key_id, r.nonce, r.ciphertext),
        })
        .collect())
}

/// Replaces signing key `kid`'s sealed half by `new`, only if it still holds `old`.
pub async fn reseal_signing_key<C: ConnectionTrait>(
    db: &C,
    kid: &str,
    old: &Sealed,
    new: Sealed,
) -> Result<bool, DbErr> {
    let done = signing_key::Entity::update_many()
        .col_expr(signing_key::Column::KeyId, Expr::value(new.key_id))
        .col_expr(signing_key::Column::Nonce, Expr::value(new.nonce))
        .col_expr(signing_key::Column::Ciphertext, Expr::value(new.ciphertext))
        .filter(signing_key::Column::Kid.eq(kid))
        .filter(signing_key::Column::KeyId.eq(old.key_id.as_str()))
        .filter(signing_key::Column::Nonce.eq(old.nonce.clone()))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// The key-check values of the keys the database recorded as needed, keyed by key id.
pub async fn key_checks<C: ConnectionTrait>(db: &C) -> Result<Vec<Sealed>, DbErr> {
    Ok(secret_key::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|r| sealed_of(r.key_id, r.nonce, r.ciphertext))
        .collect())
}

/// Records `check` (sealed with the key it names) as a key the database needs. Another
/// replica may record the same key at the same time: the first one stays.
pub async fn record_key_check<C: ConnectionTrait>(
    db: &C,
    check: Sealed,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    secret_key::Entity::insert(secret_key::ActiveModel {
        key_id: Set(check.key_id),
        nonce: Set(check.nonce),
        ciphertext: Set(check.ciphertext),
        created_at: Set(now),
    })
    .on_conflict_do_nothing_on([secret_key::Column::KeyId])
    .exec(db)
    .await?;
    Ok(())
}

/// Forgets that the database needs key `key_id`.
pub async fn forget_key<C: ConnectionTrait>(db: &C, key_id: &str) -> Result<(), DbErr> {
    secret_key::Entity::delete_by_id(key_id.to_owned())
        .exec(db)
        .await?;
    Ok(())
}
