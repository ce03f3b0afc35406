//! `docs/event-storming.md`: the event storming board, from the services' declared
//! commands, policies and read models: one diagram of the whole flow, then one per service.

use std::fmt::Write;

use chassis::flows::{EventRef, ServiceFlows};

use super::{GENERATED, SERVICES, label, publishers};

/// The sticky-note colours of event storming.
const LEGEND: &str = concat!(
    "    classDef actor fill:#fff9c4,stroke:#827717,color:#000\n",
    "    classDef command fill:#90caf9,stroke:#0d47a1,color:#000\n",
    "    classDef event fill:#ffb74d,stroke:#e65100,color:#000\n",
    "    classDef policy fill:#ce93d8,stroke:#4a148c,color:#000\n",
    "    classDef readmodel fill:#a5d6a7,stroke:#1b5e20,color:#000\n",
);

pub fn document() -> String {
    let mut doc = format!(
        "{GENERATED}\n\n# Event storming board\n\n\
         Sticky notes as in event storming: **actor** (pale yellow) issues a **command** (blue) \
         to a service, which records a **domain event** (orange); a **policy** (lilac) is \
         \"whenever this event happens, do that\" in another service; **read models** \
         (green) answer queries. Each service declares its own notes in its `FLOWS` \
         constant (crates/chassis/src/flows.rs), its consumer obeys that declaration, and \
         this board is drawn from it, so a new consumer shows up here without anyone \
         editing this page.\n\n\
         ## The whole flow\n\n```mermaid\n{}```\n",
        overview()
    );
    for service in SERVICES
        .into_iter()
        .filter(|s| !s.commands.is_empty() || !s.policies.is_empty())
    {
        write_service(&mut doc, service);
    }
    doc
}

fn overview() -> String {
    let mut chart = format!("flowchart LR\n{LEGEND}");
    for service in SERVICES {
        if service.commands.is_empty() && service.policies.is_empty() {
            continue;
        }
        let name = service.service;
        let _ = writeln!(
            chart,
            "    subgraph {name}[{}]",
            label(&format!("{name} ({})", service.subdomain.label()))
        );
        for (i, command) in service.commands.iter().enumerate() {
            let _ = writeln!(
                chart,
                "        {name}_c{i}[{}]:::command",
                label(command.name)
            );
        }
        for (i, policy) in service.policies.iter().enumerate() {
            let _ = writeln!(
                chart,
                "        {name}_p{i}[{}]:::policy",
                label(policy.name)
            );
        }
        for event in service.emitted() {
            let _ = writeln!(
                chart,
                "        {}>{}]:::event",
                event.name,
                label(event.name)
            );
        }
        let _ = writeln!(chart, "    end");
    }
    for service in SERVICES {
        let name = service.service;
        for (i, command) in service.commands.iter().enumerate() {
            for event in command.emits {
                let _ = writeln!(chart, "    {name}_c{i} --> {}", event.name);
            }
        }
        for (i, policy) in service.policies.iter().enumerate() {
            for event in policy.on {
                let _ = writeln!(chart, "    {} --> {name}_p{i}", event.name);
            }
            for event in policy.emits {
                let _ = writeln!(chart, "    {name}_p{i} --> {}", event.name);
            }
        }
    }
    chart
}

fn write_service(doc: &mut String, service: &ServiceFlows) {
    let name = service.service;
    let _ = write!(
        doc,
        "\n## {name}\n\n{} capability",
        service.subdomain.label()
    );
    match service.aggregate {
        Some(aggregate) => {
            let _ = writeln!(doc, "; aggregate **{aggregate}**.");
        }
        None => {
            let _ = writeln!(doc, "; no aggregate, only read models.");
        }
    }
    let _ = write!(doc, "\n```mermaid\nflowchart LR\n{LEGEND}");
    let mut actors: Vec<_> = service.commands.iter().map(|c| c.actor).collect();
    actors.dedup();
    for actor in actors {
        let _ = writeln!(doc, "    {0}([{0}]):::actor", actor.label());
    }
    let incoming = service.consumed();
    for event in &incoming {
        let from = publishers(event)
            .map(|s| s.service)
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            doc,
            "    in_{}>{}]:::event",
            event.name,
            label(&format!("{}<br/>from {from}", event.name))
        );
    }
    let title = service.aggregate.unwrap_or(name);
    let _ = writeln!(doc, "    subgraph own[{}]", label(title));
    for (i, command) in service.commands.iter().enumerate() {
        let _ = writeln!(
            doc,
            "        c{i}[{}]:::command",
            label(&format!(
                "{}<br/><small>{}</small>",
                command.name, command.trigger
            ))
        );
    }
    for (i, policy) in service.policies.iter().enumerate() {
        let _ = writeln!(doc, "        p{i}[{}]:::policy", label(policy.name));
    }
    for event in service.emitted() {
        let _ = writeln!(doc, "        {}>{}]:::event", event.name, label(event.name));
    }
    let _ = writeln!(doc, "    end");
    for (i, read_model) in service.read_models.iter().enumerate() {
        let _ = writeln!(doc, "    rm{i}[{}]:::readmodel", label(read_model));
        let _ = writeln!(doc, "    own -.-> rm{i}");
    }
    for (i, command) in service.commands.iter().enumerate() {
        let _ = writeln!(doc, "    {} --> c{i}", command.actor.label());
        for event in command.emits {
            let _ = writeln!(doc, "    c{i} --> {}", event.name);
        }
    }
    for (i, policy) in service.policies.iter().enumerate() {
        for event in policy.on {
            let _ = writeln!(doc, "    in_{} --> p{i}", event.name);
        }
        for event in policy.emits {
            let _ = writeln!(doc, "    p{i} --> {}", event.name);
        }
    }
    let _ = writeln!(doc, "```");
    write_tables(doc, service);
}

fn write_tables(doc: &mut String, service: &ServiceFlows) {
    if !service.commands.is_empty() {
        let _ = writeln!(
            doc,
            "\n| Command | Actor | Trigger | Emits |\n|---|---|---|---|"
        );
        for command in service.commands {
            let _ = writeln!(
                doc,
                "| {} | {} | `{}` | {} |",
                command.name,
                command.actor.label(),
                command.trigger,
                list(command.emits)
            );
        }
    }
    if !service.policies.is_empty() {
        let _ = writeln!(doc, "\n| Policy | Whenever | Emits |\n|---|---|---|");
        for policy in service.policies {
            let _ = writeln!(
                doc,
                "| {} | {} | {} |",
                policy.name,
                list(policy.on),
                list(policy.emits)
            );
        }
    }
}

fn list(events: &[EventRef]) -> String {
    if events.is_empty() {
        return "—".to_owned();
    }
    events.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
}
