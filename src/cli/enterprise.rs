//! `enterprise add|update|suspend|reinstate|list|import` and `auction deposit`: the registry
//! and deposits over the operator RPCs. `import` sends one request per CSV row, under a request
//! id derived from the row's credit code and a hash of its content, so running the same file
//! again changes nothing and a changed row is sent as an update.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use sha2::{Digest, Sha256};

use crate::proto as pb;

use super::client::{Terminal, request_id};
use super::render::{self, out};
use super::{ClientArgs, ClientError, terminal};

#[derive(Debug, Subcommand)]
pub enum EnterpriseCommand {
    /// Register an enterprise (operator).
    Add(EnterpriseArgs),
    /// Replace a registered enterprise's record (operator).
    Update(EnterpriseArgs),
    /// Suspend an enterprise from trading, or blacklist it (operator). Bids it made stand.
    Suspend {
        credit_code: String,
        /// Why; kept with the status and shown in refusals.
        #[arg(long, default_value = "")]
        reason: String,
        /// Blacklist rather than suspend.
        #[arg(long)]
        blacklist: bool,
    },
    /// Make a suspended or blacklisted enterprise active again (operator).
    Reinstate { credit_code: String },
    /// List the registry (operator, auditor).
    List,
    /// Register or update every enterprise of a CSV file, one request per row. The header
    /// names the columns: credit_code, name, region_code, industry_code, and optionally
    /// permit_number, permit_valid_from, permit_valid_until, affiliate_group. Running the same
    /// file again changes nothing.
    Import {
        #[arg(long, value_name = "FILE")]
        csv: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct EnterpriseArgs {
    /// The 18-character unified social credit code.
    #[arg(long)]
    pub credit_code: String,
    #[arg(long)]
    pub name: String,
    /// GB/T 2260 region code, e.g. 140100.
    #[arg(long)]
    pub region: String,
    /// GB/T 4754 industry code, e.g. C2511.
    #[arg(long)]
    pub industry: String,
    /// The discharge permit (排污许可证) number; none if omitted.
    #[arg(long, default_value = "", requires_all = ["permit_from", "permit_until"])]
    pub permit: String,
    /// First day the permit is valid, YYYY-MM-DD.
    #[arg(long, default_value = "")]
    pub permit_from: String,
    /// Last day the permit is valid, YYYY-MM-DD.
    #[arg(long, default_value = "")]
    pub permit_until: String,
    /// Affiliate group: enterprises of one group share a per-bidder cap.
    #[arg(long, default_value = "")]
    pub group: String,
}

impl EnterpriseArgs {
    fn record(&self) -> pb::Enterprise {
        pb::Enterprise {
            credit_code: self.credit_code.clone(),
            name: self.name.clone(),
            region_code: self.region.clone(),
            industry_code: self.industry.clone(),
            permit_number: self.permit.clone(),
            permit_valid_from: self.permit_from.clone(),
            permit_valid_until: self.permit_until.clone(),
            affiliate_group: self.group.clone(),
            ..Default::default()
        }
    }
}

pub async fn run(args: ClientArgs<EnterpriseCommand>) -> Result<(), ClientError> {
    // Read before connecting: a missing or malformed file needs no server to be refused.
    let rows = match &args.command {
        EnterpriseCommand::Import { csv } => Some(read_csv(csv)?),
        _ => None,
    };
    let mut t = terminal(&args).await?;
    let op = &mut t.operator;
    let status = |code: &str, status: pb::EnterpriseStatus, reason: &str| pb::SetEnterpriseStatusRequest {
        request_id: request_id(),
        credit_code: code.to_owned(),
        status: status as i32,
        reason: reason.to_owned(),
    };
    let shown = match &args.command {
        EnterpriseCommand::Add(e) => {
            let request = pb::EnterpriseRequest { request_id: request_id(), enterprise: Some(e.record()) };
            op.add_enterprise(request).await?.into_inner()
        }
        EnterpriseCommand::Update(e) => {
            let request = pb::EnterpriseRequest { request_id: request_id(), enterprise: Some(e.record()) };
            op.update_enterprise(request).await?.into_inner()
        }
        EnterpriseCommand::Suspend { credit_code, reason, blacklist } => {
            let kind = if *blacklist { pb::EnterpriseStatus::Blacklisted } else { pb::EnterpriseStatus::Suspended };
            op.suspend_enterprise(status(credit_code, kind, reason)).await?.into_inner()
        }
        EnterpriseCommand::Reinstate { credit_code } => {
            op.suspend_enterprise(status(credit_code, pb::EnterpriseStatus::Active, "")).await?.into_inner()
        }
        EnterpriseCommand::List => {
            let list = op.list_enterprises(pb::ListEnterprisesRequest {}).await?.into_inner();
            for e in &list.enterprises {
                out!("{}\n", render::enterprise(e))?;
            }
            return Ok(());
        }
        EnterpriseCommand::Import { .. } => return import(&mut t, rows.expect("read above")).await,
    };
    out!("{}\n", render::enterprise(&shown))?;
    Ok(())
}

/// Sends each row as an add, or as an update when the enterprise is registered already. The
/// request ids are the row's: `import-add-CODE-HASH` and `import-update-CODE-HASH`.
async fn import(t: &mut Terminal, rows: Vec<(usize, pb::Enterprise)>) -> Result<(), ClientError> {
    let (mut added, mut updated, mut failed) = (0, 0, 0);
    for (line, record) in rows {
        let key = row_key(&record);
        let add = pb::EnterpriseRequest { request_id: format!("import-add-{key}"), enterprise: Some(record.clone()) };
        let result = match t.operator.add_enterprise(add).await {
            Ok(_) => Ok("added"),
            Err(e) if render::reason_of(&e).as_deref() == Some("ENTERPRISE_EXISTS") => {
                let update = pb::EnterpriseRequest {
                    request_id: format!("import-update-{key}"),
                    enterprise: Some(record.clone()),
                };
                t.operator.update_enterprise(update).await.map(|_| "updated")
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(what) => {
                if what == "added" {
                    added += 1
                } else {
                    updated += 1
                }
                out!("line {line}: {} {what}\n", record.credit_code)?;
            }
            Err(e) => {
                failed += 1;
                out!("line {line}: {} refused: {}\n", record.credit_code, render::status(&e))?;
            }
        }
    }
    out!("{added} added, {updated} updated, {failed} refused\n")?;
    if failed > 0 {
        return Err(ClientError::Usage(format!("{failed} rows were refused")));
    }
    Ok(())
}

/// The credit code and the first 16 hex digits of SHA-256 over the row's fields (each
/// followed by a NUL), so an unchanged row maps to the same request ids.
fn row_key(e: &pb::Enterprise) -> String {
    let mut h = Sha256::new();
    for field in [
        &e.credit_code,
        &e.name,
        &e.region_code,
        &e.industry_code,
        &e.permit_number,
        &e.permit_valid_from,
        &e.permit_valid_until,
        &e.affiliate_group,
    ] {
        h.update(field.as_bytes());
        h.update([0]);
    }
    format!("{}-{}", e.credit_code, &hex::encode(h.finalize())[..16])
}

/// Reads the file's rows as records, each with its line number.
fn read_csv(path: &PathBuf) -> Result<Vec<(usize, pb::Enterprise)>, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else { return Ok(Vec::new()) };
    let columns = split_row(header).map_err(|e| ClientError::Usage(format!("{}:1: {e}", path.display())))?;
    const KNOWN: [&str; 8] = [
        "credit_code",
        "name",
        "region_code",
        "industry_code",
        "permit_number",
        "permit_valid_from",
        "permit_valid_until",
        "affiliate_group",
    ];
    if let Some(unknown) = columns.iter().find(|c| !KNOWN.contains(&c.as_str())) {
        return Err(ClientError::Usage(format!("{}:1: unknown column {unknown:?}", path.display())));
    }
    for required in &KNOWN[..4] {
        if !columns.iter().any(|c| c == required) {
            return Err(ClientError::Usage(format!("{}:1: the column {required} is required", path.display())));
        }
    }
    let mut rows = Vec::new();
    for (n, line) in lines {
        let fields = split_row(line).map_err(|e| ClientError::Usage(format!("{}:{}: {e}", path.display(), n + 1)))?;
        if fields.len() != columns.len() {
            return Err(ClientError::Usage(format!(
                "{}:{}: {} fields, the header has {}",
                path.display(),
                n + 1,
                fields.len(),
                columns.len()
            )));
        }
        let mut e = pb::Enterprise::default();
        for (column, value) in columns.iter().zip(fields) {
            let slot = match column.as_str() {
                "credit_code" => &mut e.credit_code,
                "name" => &mut e.name,
                "region_code" => &mut e.region_code,
                "industry_code" => &mut e.industry_code,
                "permit_number" => &mut e.permit_number,
                "permit_valid_from" => &mut e.permit_valid_from,
                "permit_valid_until" => &mut e.permit_valid_until,
                _ => &mut e.affiliate_group,
            };
            *slot = value;
        }
        rows.push((n + 1, e));
    }
    Ok(rows)
}

/// One CSV row (RFC 4180): fields separated by commas, optionally in double quotes, a quote
/// inside a quoted field doubled.
fn split_row(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            if chars.peek().is_some_and(|c| *c != ',') {
                return Err("text after a quoted field".into());
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| *c != ',') {
                field.push(c);
                chars.next();
            }
        }
        fields.push(field.trim().to_owned());
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_plain_and_quoted_fields() {
        assert_eq!(split_row("a, b ,c").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            split_row("\"Taiyuan Steel, Ltd.\",\"say \"\"hi\"\"\",").unwrap(),
            ["Taiyuan Steel, Ltd.", "say \"hi\"", ""]
        );
        assert!(split_row("\"open").is_err());
    }

    #[test]
    fn a_row_keys_by_code_and_content() {
        let e = pb::Enterprise { credit_code: "X".into(), name: "a".into(), ..Default::default() };
        let changed = pb::Enterprise { name: "b".into(), ..e.clone() };
        assert_eq!(row_key(&e), row_key(&e.clone()));
        assert_ne!(row_key(&e), row_key(&changed));
        assert!(row_key(&e).starts_with("X-"));
    }
}
