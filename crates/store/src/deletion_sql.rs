//! Tenant deletion and address erasure, written once for both backends (sqlx binds
//! `$n` on both): `deletion_sql!(Conn)` expands, in `sqlite/deletion.rs` and
//! `postgres/deletion.rs`, to functions that do every row change inside the caller's
//! transaction and return the events to write. The caller inserts those events last
//! (PostgreSQL: under the event-order lock) and commits — so the rows and their events
//! are one transaction on both backends.
//!
//! Erasure finds the address in: recipients (address; their ORCPT and last reply are
//! redacted too), messages (envelope sender, Return-Path, metadata), the stored bodies
//! of the messages sent to or from it and of every stored delivery report (headers
//! included; literal occurrences only — base64, quoted-printable or RFC 2047 encoded
//! forms are not decoded; other messages' bodies that merely mention it are not
//! searched), search
//! subjects, events (recipient and detail: replies, tracking, unsubscribes; pending
//! webhook deliveries are built from these rows, so they send the redacted text),
//! suppressions, sandbox recipients, and idempotent replies.

macro_rules! deletion_sql {
    ($conn:ty) => {
/// Runs `sql` with the tenant bound as `$1`; rows affected.
async fn delete_for(conn: &mut $conn, sql: &'static str, tenant: &str) -> Result<u64, StoreError> {
    Ok(sqlx::query(sql)
        .bind(tenant)
        .execute(&mut *conn)
        .await
        .map_err(db("tenant"))?
        .rows_affected())
}

/// A tenant deleted earlier without `purge` whose messages or events are still
/// stored: its name (from its `tenant.deleted` event). `None`: nothing left.
async fn leftover_name(conn: &mut $conn, t: &str) -> Result<Option<String>, StoreError> {
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM messages WHERE tenant_id = $1) \
              + (SELECT COUNT(*) FROM events WHERE tenant_id = $1 AND type <> 'tenant.deleted')",
    )
    .bind(t)
    .fetch_one(&mut *conn)
    .await
    .map_err(db("tenant"))?;
    if left == 0 {
        return Ok(None);
    }
    let detail: Option<String> = sqlx::query_scalar(
        "SELECT detail FROM events WHERE tenant_id = $1 AND type = 'tenant.deleted' \
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(t)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("tenant"))?;
    Ok(Some(
        detail
            .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
            .and_then(|d| d["tenant_name"].as_str().map(str::to_string))
            .unwrap_or_default(),
    ))
}

/// Deletes the tenant and what belongs to it (see `DeletionStore::delete_tenant`);
/// returns its name, the counts and the `cancelled` events to write (none with
/// `purge`: the messages they would name are gone). With `purge`, a tenant deleted
/// before whose messages or events remain is purged now. `None`: no such tenant (or
/// nothing left of it to purge).
async fn tenant_rows(
    conn: &mut $conn,
    tenant: &TenantId,
    purge: bool,
    now: i64,
) -> Result<Option<(String, TenantRemoved, Vec<Event>)>, StoreError> {
    let t = tenant.as_str();
    let name = sqlx::query_scalar::<_, String>("SELECT name FROM tenants WHERE id = $1")
        .bind(t)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("tenant"))?;
    let name = match name {
        Some(name) => name,
        None if purge => match leftover_name(conn, t).await? {
            Some(name) => name,
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    let mut n = TenantRemoved::default();
    // Mail still waiting is cancelled; a recipient in flight keeps its lease, so a
    // delivery that succeeds is still recorded as the fact it is.
    let cancelled = sqlx::query(
        "UPDATE recipients SET state = 'cancelled', lease_until = NULL, updated_at = $2 \
         WHERE state IN ('queued', 'deferred', 'quarantined') \
           AND message_id IN (SELECT id FROM messages WHERE tenant_id = $1) \
         RETURNING message_id, address",
    )
    .bind(t)
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("recipient"))?;
    n.cancelled_recipients = cancelled.len() as u64;
    let mut events = Vec::new();
    if !purge {
        for r in &cancelled {
            events.push(Event {
                id: EventId::generate(),
                kind: EventType::Cancelled,
                at: now,
                message_id: Some(MessageId::from_stored(r.get("message_id"))),
                tenant_id: Some(tenant.clone()),
                recipient: Some(r.get("address")),
                detail: crate::cancelled_detail(Some("tenant_deleted")).to_value(),
            });
        }
    }
    n.dkim_keys = delete_for(conn,
        "DELETE FROM dkim_keys WHERE domain IN (SELECT name FROM domains WHERE tenant_id = $1)", t).await?;
    n.domains = delete_for(conn, "DELETE FROM domains WHERE tenant_id = $1", t).await?;
    n.signing_choices = delete_for(conn, "DELETE FROM signing_choices WHERE tenant_id = $1", t).await?;
    n.console_sessions = delete_for(conn,
        "DELETE FROM console_sessions WHERE tenant_id = $1 \
         OR api_key_id IN (SELECT id FROM api_keys WHERE tenant_id = $1)", t).await?;
    delete_for(conn,
        "DELETE FROM api_key_secrets WHERE key_id IN (SELECT id FROM api_keys WHERE tenant_id = $1)", t).await?;
    n.api_keys = delete_for(conn, "DELETE FROM api_keys WHERE tenant_id = $1", t).await?;
    n.smtp_credentials = delete_for(conn, "DELETE FROM smtp_credentials WHERE tenant_id = $1", t).await?;
    n.allowed_ips = delete_for(conn, "DELETE FROM allowed_ips WHERE tenant_id = $1", t).await?;
    n.sandbox_recipients = delete_for(conn, "DELETE FROM sandbox_recipients WHERE tenant_id = $1", t).await?;
    n.suppressions = delete_for(conn, "DELETE FROM suppressions WHERE tenant_id = $1", t).await?;
    n.idempotency_keys = delete_for(conn, "DELETE FROM idempotency_keys WHERE tenant_id = $1", t).await?;
    n.webhook_deliveries = delete_for(conn,
        "DELETE FROM webhook_deliveries WHERE webhook_id IN (SELECT id FROM webhooks WHERE tenant_id = $1)", t).await?;
    n.webhooks = delete_for(conn, "DELETE FROM webhooks WHERE tenant_id = $1", t).await?;
    delete_for(conn, "DELETE FROM tenant_egress_pools WHERE tenant_id = $1", t).await?;
    delete_for(conn, "DELETE FROM sender_health WHERE tenant_id = $1", t).await?;
    delete_for(conn, "DELETE FROM shaping_throttles WHERE tenant = $1", t).await?;
    if purge {
        n.bodies = delete_for(conn,
            "DELETE FROM message_bodies WHERE message_id IN (SELECT id FROM messages WHERE tenant_id = $1)", t).await?;
        delete_for(conn,
            "DELETE FROM recipients WHERE message_id IN (SELECT id FROM messages WHERE tenant_id = $1)", t).await?;
        // Search subjects and tags go with their message (trigger `message_search_cleanup`).
        n.messages = delete_for(conn, "DELETE FROM messages WHERE tenant_id = $1", t).await?;
        n.webhook_deliveries += delete_for(conn,
            "DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM events WHERE tenant_id = $1)", t).await?;
        n.events = delete_for(conn, "DELETE FROM events WHERE tenant_id = $1", t).await?;
        delete_for(conn, "DELETE FROM event_counters WHERE tenant_id = $1", t).await?;
    }
    delete_for(conn, "DELETE FROM tenants WHERE id = $1", t).await?;
    Ok(Some((name, n, events)))
}

/// Redacts `address` (lowercase) within `tenant` (`None`: every tenant); see
/// `DeletionStore::erase_address`. Returns the counts and the `cancelled` events.
async fn erase_rows(
    conn: &mut $conn,
    address: &str,
    tenant: Option<&TenantId>,
    now: i64,
) -> Result<(ErasureCounts, Vec<Event>), StoreError> {
    let redacted = crate::redacted_address(address);
    let like = crate::deletion_types::like_contains(address);
    let tenant = tenant.map(|t| t.as_str());
    let mut n = ErasureCounts::default();
    let mut events = Vec::new();
    let mut touched: Vec<String> = Vec::new();

    let rows = sqlx::query(
        "SELECT r.message_id, r.idx, r.state, r.dsn_orcpt, r.last_reply, m.tenant_id \
         FROM recipients r JOIN messages m ON m.id = r.message_id \
         WHERE lower(r.address) = $1 AND ($2 IS NULL OR m.tenant_id = $2)",
    )
    .bind(address)
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("recipient"))?;
    for r in &rows {
        let id: String = r.get("message_id");
        let state: String = r.get("state");
        let waiting = matches!(state.as_str(), "queued" | "deferred" | "quarantined");
        let orcpt: Option<String> = r.get("dsn_orcpt");
        let reply: Option<String> = r.get("last_reply");
        let redact = |v: Option<String>| {
            v.map(|s| crate::deletion_types::redact_text(&s, address, &redacted).unwrap_or(s))
        };
        // The lease is dropped too: an attempt in flight can then record nothing (no
        // event naming the address after the erasure).
        sqlx::query(
            "UPDATE recipients SET address = $1, dsn_orcpt = $2, last_reply = $3, \
             state = $4, lease_until = NULL, lease_owner = NULL, lease_token = NULL, \
             updated_at = $5 WHERE message_id = $6 AND idx = $7",
        )
        .bind(&redacted)
        .bind(redact(orcpt))
        .bind(redact(reply))
        .bind(if waiting { "cancelled" } else { state.as_str() })
        .bind(now)
        .bind(&id)
        .bind(r.get::<i64, _>("idx"))
        .execute(&mut *conn)
        .await
        .map_err(db("recipient"))?;
        n.recipients += 1;
        if waiting {
            n.cancelled += 1;
            events.push(Event {
                id: EventId::generate(),
                kind: EventType::Cancelled,
                at: now,
                message_id: Some(MessageId::from_stored(id.clone())),
                tenant_id: Some(TenantId::from_stored(r.get("tenant_id"))),
                recipient: Some(redacted.clone()),
                detail: crate::cancelled_detail(Some("address_erased")).to_value(),
            });
        }
        touched.push(id);
    }

    let rows = sqlx::query(
        "SELECT id, mail_from, return_path, meta FROM messages \
         WHERE ($2 IS NULL OR tenant_id = $2) AND (lower(mail_from) = $1 \
           OR lower(COALESCE(return_path, '')) LIKE $3 ESCAPE '\\' \
           OR lower(COALESCE(meta, '')) LIKE $3 ESCAPE '\\')",
    )
    .bind(address)
    .bind(tenant)
    .bind(&like)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("message"))?;
    for r in &rows {
        let id: String = r.get("id");
        let from: String = r.get("mail_from");
        let rp: Option<String> = r.get("return_path");
        let meta: Option<String> = r.get("meta");
        let red = |s: &str| crate::deletion_types::redact_text(s, address, &redacted);
        let (from2, rp2, meta2) = (red(&from), rp.as_deref().and_then(red), meta.as_deref().and_then(red));
        if from2.is_none() && rp2.is_none() && meta2.is_none() {
            continue;
        }
        sqlx::query("UPDATE messages SET mail_from = $1, return_path = $2, meta = $3 WHERE id = $4")
            .bind(from2.unwrap_or(from))
            .bind(rp2.or(rp))
            .bind(meta2.or(meta))
            .bind(&id)
            .execute(&mut *conn)
            .await
            .map_err(db("message"))?;
        n.messages += 1;
        touched.push(id);
    }

    // Delivery reports Mailroom wrote about it (to the sender) quote its address and
    // the original's headers: every report still stored is searched too (only those
    // not yet delivered, or kept for a late bounce, have a body).
    let reports = sqlx::query_scalar::<_, String>(
        "SELECT m.id FROM messages m JOIN message_bodies b ON b.message_id = m.id \
         WHERE m.source = 'dsn' AND ($1 IS NULL OR m.tenant_id = $1)",
    )
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("message"))?;
    touched.extend(reports);
    touched.sort();
    touched.dedup();
    for id in &touched {
        let Some(b) = sqlx::query(
            "SELECT b.body, CAST(b.codec AS BIGINT) AS codec, m.size FROM message_bodies b \
             JOIN messages m ON m.id = b.message_id WHERE b.message_id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("message"))?
        else {
            continue;
        };
        let body = crate::body_codec::decode(b.get("body"), b.get("codec"), b.get("size"))?;
        let Some(body) =
            crate::deletion_types::redact_bytes(&body, address.as_bytes(), redacted.as_bytes())
        else {
            continue;
        };
        let (stored, codec) = crate::body_codec::encode(&body);
        sqlx::query("UPDATE message_bodies SET codec = $1, body = $2 WHERE message_id = $3")
            .bind(codec as i16)
            .bind(stored.as_ref())
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(db("message"))?;
        sqlx::query("UPDATE messages SET size = $1 WHERE id = $2")
            .bind(body.len() as i64)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(db("message"))?;
        n.bodies += 1;
    }

    let rows = sqlx::query(
        "SELECT s.message_id, s.subject FROM message_subjects s JOIN messages m ON m.id = s.message_id \
         WHERE ($2 IS NULL OR m.tenant_id = $2) AND lower(s.subject) LIKE $1 ESCAPE '\\'",
    )
    .bind(&like)
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("message"))?;
    for r in &rows {
        let subject: String = r.get("subject");
        if let Some(s) = crate::deletion_types::redact_text(&subject, address, &redacted) {
            sqlx::query("UPDATE message_subjects SET subject = $1 WHERE message_id = $2")
                .bind(s)
                .bind(r.get::<String, _>("message_id"))
                .execute(&mut *conn)
                .await
                .map_err(db("message"))?;
            n.subjects += 1;
        }
    }

    let rows = sqlx::query(
        "SELECT seq, recipient, detail FROM events \
         WHERE ($2 IS NULL OR tenant_id = $2) \
           AND (lower(COALESCE(recipient, '')) = $1 OR lower(detail) LIKE $3 ESCAPE '\\')",
    )
    .bind(address)
    .bind(tenant)
    .bind(&like)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("event"))?;
    for r in &rows {
        let seq: i64 = r.get("seq");
        let recipient: Option<String> = r.get("recipient");
        let detail: String = r.get("detail");
        let rcpt2 = recipient
            .as_deref()
            .and_then(|s| crate::deletion_types::redact_text(s, address, &redacted));
        let detail2 = crate::deletion_types::redact_text(&detail, address, &redacted);
        if rcpt2.is_none() && detail2.is_none() {
            continue;
        }
        sqlx::query("UPDATE events SET recipient = $1, detail = $2 WHERE seq = $3")
            .bind(rcpt2.or(recipient))
            .bind(detail2.unwrap_or(detail))
            .bind(seq)
            .execute(&mut *conn)
            .await
            .map_err(db("event"))?;
        n.events += 1;
        n.webhook_deliveries += sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE seq = $1 AND state = 'pending'",
        )
        .bind(seq)
        .fetch_one(&mut *conn)
        .await
        .map_err(db("webhook delivery"))?
        .max(0) as u64;
    }

    let by_address = |sql: &'static str| {
        sqlx::query(sql).bind(address.to_string()).bind(tenant.map(str::to_string))
    };
    n.suppressions = by_address(
        "DELETE FROM suppressions WHERE address = $1 AND ($2 IS NULL OR tenant_id = $2)",
    )
    .execute(&mut *conn)
    .await
    .map_err(db("suppression"))?
    .rows_affected();
    n.sandbox_recipients = by_address(
        "DELETE FROM sandbox_recipients WHERE address = $1 AND ($2 IS NULL OR tenant_id = $2)",
    )
    .execute(&mut *conn)
    .await
    .map_err(db("sandbox recipient"))?
    .rows_affected();
    n.idempotency_keys = sqlx::query(
        "DELETE FROM idempotency_keys WHERE ($2 IS NULL OR tenant_id = $2) \
         AND lower(response) LIKE $1 ESCAPE '\\'",
    )
    .bind(&like)
    .bind(tenant)
    .execute(&mut *conn)
    .await
    .map_err(db("idempotency key"))?
    .rows_affected();
    Ok((n, events))
}

/// The `tenant.deleted` event.
fn tenant_deleted_event(tenant: &TenantId, name: &str, purge: bool, n: &TenantRemoved, now: i64) -> Event {
    Event {
        id: EventId::generate(),
        kind: EventType::TenantDeleted,
        at: now,
        message_id: None,
        tenant_id: Some(tenant.clone()),
        recipient: None,
        detail: mailroom_model::EventDetail::from(mailroom_model::TenantDeletedDetail {
            purged: purge,
            removed: crate::removed_counts(n),
            tenant_name: name.to_string(),
        })
        .to_value(),
    }
}

/// The `address.erased` event: the address only as its hash.
fn erased_event(address: &str, tenant: Option<&TenantId>, n: &ErasureCounts, now: i64) -> Event {
    Event {
        id: EventId::generate(),
        kind: EventType::AddressErased,
        at: now,
        message_id: None,
        tenant_id: tenant.cloned(),
        recipient: None,
        detail: mailroom_model::EventDetail::from(mailroom_model::AddressErasedDetail {
            address_sha256: crate::address_sha256(address),
            counts: crate::removed_counts(n),
            redacted: crate::redacted_address(address),
        })
        .to_value(),
    }
}

/// Inserts `events` in order (PostgreSQL callers hold the event-order lock).
async fn insert_events(conn: &mut $conn, events: &[Event]) -> Result<(), StoreError> {
    for e in events {
        sqlx::query(
            "INSERT INTO events (id, type, at, message_id, tenant_id, recipient, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.id.as_str())
        .bind(e.kind.as_str())
        .bind(e.at)
        .bind(e.message_id.as_ref().map(|m| m.as_str().to_string()))
        .bind(e.tenant_id.as_ref().map(|t| t.as_str().to_string()))
        .bind(e.recipient.clone())
        .bind(e.detail.to_string())
        .execute(&mut *conn)
        .await
        .map_err(db("event"))?;
    }
    Ok(())
}
    };
}
