//! `store`, `operator` and `scheduler`: what the placement driver (region 1's leader) knows
//! and does, asked of it through any endpoint.

use serde_json::{Value, json};
use tinykv_client::Client;
use tinykv_proto::placement::{
    OperatorDesc, OperatorSpec, PlacementAnswer, PlacementRequest, SchedulerDesc, StepDesc,
    StoreDesc,
};

use crate::args::{GlobalArgs, OperatorAddCmd, OperatorCmd, Output, SchedulerCmd, StoreCmd};
use crate::connect;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::{Table, human_bytes, print_json};

async fn ask(client: &Client, req: PlacementRequest) -> CliResult<PlacementAnswer> {
    client.placement(req).await.map_err(|e| {
        let off = e.to_string().contains("placement.enabled");
        let err = CliError::from(e);
        if off {
            err.hint("set `placement: { enabled: true }` in every node's config and restart them")
        } else {
            err
        }
    })
}

fn unexpected(answer: PlacementAnswer) -> CliError {
    CliError::failed(format!(
        "the placement driver answered something else: {answer:?}"
    ))
}

pub async fn store(global: &GlobalArgs, cmd: StoreCmd) -> CliResult {
    let client = connect::client(global).await?;
    let stores = |answer| match answer {
        PlacementAnswer::Stores(s) => Ok(s),
        other => Err(unexpected(other)),
    };
    match cmd {
        StoreCmd::List => {
            let list = stores(ask(&client, PlacementRequest::Stores).await?)?;
            print_stores(global.output, &list);
        }
        StoreCmd::Show { id } => {
            let list = stores(ask(&client, PlacementRequest::Stores).await?)?;
            let store = find_store(&list, id)?;
            if global.output == Output::Json {
                print_json(&store_json(store));
            } else {
                print_stores(global.output, std::slice::from_ref(store));
            }
        }
        StoreCmd::Delete { id } => {
            match ask(&client, PlacementRequest::DeleteStore { store_id: id }).await? {
                PlacementAnswer::Recorded => {}
                other => return Err(unexpected(other)),
            }
            let list = stores(ask(&client, PlacementRequest::Stores).await?)?;
            let store = find_store(&list, id)?;
            if global.output == Output::Json {
                print_json(&store_json(store));
            } else {
                println!(
                    "store {id} is {}: its {} region(s) are being moved to other stores; it \
                     becomes Tombstone once it holds none (`tinykv store show {id}`)",
                    store.state.as_str(),
                    store.region_count
                );
            }
        }
    }
    Ok(())
}

fn find_store(list: &[StoreDesc], id: u64) -> CliResult<&StoreDesc> {
    list.iter().find(|s| s.id == id).ok_or_else(|| {
        CliError::new(
            Exit::NotFound,
            format!("store {id} is unknown to the placement driver"),
        )
        .hint("list the stores with `tinykv store list`")
    })
}

fn store_json(s: &StoreDesc) -> Value {
    json!({
        "id": s.id,
        "addr": s.addr,
        "state": s.state.as_str(),
        "regions": s.region_count,
        "leaders": s.leader_count,
        "region_size": s.region_size,
        "pending_peers": s.pending_peer_count,
        "capacity": s.capacity,
        "available": s.available,
        "last_heartbeat_ago_ms": s.last_heartbeat_ago_ms,
    })
}

fn print_stores(output: Output, list: &[StoreDesc]) {
    if output == Output::Json {
        let stores: Vec<Value> = list.iter().map(store_json).collect();
        print_json(&json!({ "stores": stores }));
        return;
    }
    let mut t = Table::new(&[
        "ID",
        "ADDRESS",
        "STATE",
        "REGIONS",
        "LEADERS",
        "SIZE",
        "PENDING",
        "AVAILABLE",
        "CAPACITY",
        "HEARTBEAT",
    ]);
    for s in list {
        t.row(vec![
            s.id.to_string(),
            s.addr.clone(),
            s.state.as_str().to_string(),
            s.region_count.to_string(),
            s.leader_count.to_string(),
            human_bytes(s.region_size),
            s.pending_peer_count.to_string(),
            human_bytes(s.available),
            human_bytes(s.capacity),
            format!("{:.1}s ago", s.last_heartbeat_ago_ms as f64 / 1000.0),
        ]);
    }
    t.print();
}

pub async fn operator(global: &GlobalArgs, cmd: OperatorCmd) -> CliResult {
    let client = connect::client(global).await?;
    match cmd {
        OperatorCmd::List => match ask(&client, PlacementRequest::Operators).await? {
            PlacementAnswer::Operators(list) => print_operators(global.output, &list),
            other => return Err(unexpected(other)),
        },
        OperatorCmd::Add(add) => {
            let spec = match add {
                OperatorAddCmd::TransferLeader { region, store } => OperatorSpec::TransferLeader {
                    region_id: region,
                    to_store: store,
                },
                OperatorAddCmd::MovePeer { region, from, to } => OperatorSpec::MovePeer {
                    region_id: region,
                    from_store: from,
                    to_store: to,
                },
            };
            match ask(&client, PlacementRequest::AddOperator(spec)).await? {
                PlacementAnswer::OperatorAdded { operator_id } => {
                    if global.output == Output::Json {
                        print_json(&json!({ "operator": operator_id }));
                    } else {
                        println!(
                            "operator {operator_id} started; follow it with `tinykv operator list`"
                        );
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
        OperatorCmd::Remove { region } => {
            match ask(
                &client,
                PlacementRequest::RemoveOperator { region_id: region },
            )
            .await?
            {
                PlacementAnswer::OperatorRemoved { operator_id } => {
                    if global.output == Output::Json {
                        print_json(&json!({ "operator": operator_id, "region": region }));
                    } else {
                        println!("operator {operator_id} of region {region} stopped");
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }
    Ok(())
}

fn step_json(step: &StepDesc) -> Value {
    match step {
        StepDesc::AddLearner {
            store_id, peer_id, ..
        } => json!({ "add_learner": { "store": store_id, "peer": peer_id } }),
        StepDesc::PromoteLearner { store_id, peer_id } => {
            json!({ "promote_learner": { "store": store_id, "peer": peer_id } })
        }
        StepDesc::RemovePeer { store_id } => json!({ "remove_peer": { "store": store_id } }),
        StepDesc::TransferLeader {
            from_store,
            to_store,
        } => json!({ "transfer_leader": { "from": from_store, "to": to_store } }),
    }
}

fn print_operators(output: Output, list: &[OperatorDesc]) {
    if output == Output::Json {
        let ops: Vec<Value> = list
            .iter()
            .map(|o| {
                json!({
                    "id": o.id,
                    "region": o.region_id,
                    "kind": o.kind,
                    "steps": o.steps.iter().map(step_json).collect::<Vec<_>>(),
                    "next_step": o.next_step,
                    "age_ms": o.age_ms,
                })
            })
            .collect();
        print_json(&json!({ "operators": ops }));
        return;
    }
    let mut t = Table::new(&["ID", "REGION", "KIND", "STEP", "AGE", "STEPS"]);
    for o in list {
        let steps: Vec<String> = o.steps.iter().map(ToString::to_string).collect();
        t.row(vec![
            o.id.to_string(),
            o.region_id.to_string(),
            o.kind.clone(),
            format!("{}/{}", o.next_step + 1, o.steps.len()),
            format!("{:.1}s", o.age_ms as f64 / 1000.0),
            steps.join(", "),
        ]);
    }
    t.print();
}

pub async fn scheduler(global: &GlobalArgs, cmd: SchedulerCmd) -> CliResult {
    let client = connect::client(global).await?;
    let req = match cmd {
        SchedulerCmd::List => PlacementRequest::Schedulers,
        SchedulerCmd::Pause { name } => PlacementRequest::PauseScheduler { name },
        SchedulerCmd::Resume { name } => PlacementRequest::ResumeScheduler { name },
    };
    match ask(&client, req).await? {
        PlacementAnswer::Schedulers(_) | PlacementAnswer::Recorded => {}
        other => return Err(unexpected(other)),
    }
    // Whatever was asked, show where every scheduler stands now.
    match ask(&client, PlacementRequest::Schedulers).await? {
        PlacementAnswer::Schedulers(list) => print_schedulers(global.output, &list),
        other => return Err(unexpected(other)),
    }
    Ok(())
}

fn print_schedulers(output: Output, list: &[SchedulerDesc]) {
    if output == Output::Json {
        let all: Vec<Value> = list
            .iter()
            .map(|s| json!({ "name": s.name, "paused": s.paused }))
            .collect();
        print_json(&json!({ "schedulers": all }));
        return;
    }
    let mut t = Table::new(&["NAME", "STATE"]);
    for s in list {
        let state = if s.paused { "paused" } else { "running" };
        t.row(vec![s.name.clone(), state.to_string()]);
    }
    t.print();
}
