//! At start-up, the orb jobs an earlier run of this server left behind are
//! cancelled (not re-adopted: their tokens died with that server, so they could
//! never be supervised or speak again); the jobs an upgrade in place handed
//! over, with their tokens, are spared. A job is this server's when its comment
//! names this server's orb URL (`ORB_CPU_WEBSOCKET_URL`): two servers sharing a
//! cluster and a user never cancel each other's orbs.

use super::Cluster;
use super::job_spec::JOB_NAME_PREFIX;

/// The `--comment` of this server's jobs.
pub fn comment_for(websocket_base: &str) -> String {
    format!("muc-orb:{websocket_base}")
}

/// The ids among `squeue -h -o '%i|%j|%k'` output that are `comment`'s orb jobs.
pub fn ours(squeue: &str, comment: &str) -> Vec<String> {
    squeue
        .lines()
        .filter_map(|line| {
            let mut fields = line.trim().splitn(3, '|');
            let (id, name, their) = (fields.next()?, fields.next()?, fields.next()?);
            (name.starts_with(JOB_NAME_PREFIX) && their == comment).then(|| id.to_owned())
        })
        .collect()
}

/// Cancels every pending or running job of `comment` but those in `spare` (the
/// jobs an upgrade handed over); returns how many. Errors are
/// logged: a cluster that does not answer now leaves them to Slurm's time limit.
pub async fn cancel_leftovers(cluster: &Cluster, comment: &str, spare: &[String]) -> usize {
    let args = vec![
        "--noheader".to_owned(),
        "--me".to_owned(),
        "--states=PENDING,RUNNING,CONFIGURING,SUSPENDED,REQUEUED".to_owned(),
        "--format=%i|%j|%k".to_owned(),
    ];
    let listed = match cluster.query("squeue", &args).await {
        Ok(out) => out,
        Err(error) => {
            tracing::warn!(%error, "cannot list the orb jobs of an earlier server");
            return 0;
        }
    };
    let mut jobs = ours(&listed, comment);
    // The jobs an upgrade handed over are ours, not leftovers.
    jobs.retain(|job| !spare.contains(job));
    if jobs.is_empty() {
        return 0;
    }
    tracing::warn!(jobs = ?jobs, "cancelling the orb jobs an earlier server left");
    match cluster.query("scancel", &jobs).await {
        Ok(_) => jobs.len(),
        Err(error) => {
            tracing::warn!(%error, "cannot cancel the orb jobs of an earlier server");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_servers_orb_jobs_are_ours() {
        let comment = comment_for("ws://10.0.0.1:3000/ws-simple");
        let out = format!(
            "1|orb-r1|{comment}\n2|orb-r2|muc-orb:ws://10.0.0.2:3000/ws-simple\n3|train|{comment}\n4|orb-r3|{comment}\n"
        );
        assert_eq!(ours(&out, &comment), ["1", "4"]);
    }
}
